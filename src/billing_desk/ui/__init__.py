"""The desktop application: the main window, its views, and the background operations through
which every view reaches the services. Nothing outside this package imports Qt."""
