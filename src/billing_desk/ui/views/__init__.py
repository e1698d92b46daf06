"""The main window's views, one module each; `base.View` is what they share."""
