"""The bundle's entry point: the same launcher `pip install` gives (window or command line)."""

from billing_desk.launcher import main

main()
