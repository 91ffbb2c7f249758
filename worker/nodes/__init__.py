"""This project's PeekingDuck nodes, in PeekingDuck's layout: ``<type>/<name>.py`` + ``configs/<type>/<name>.yml``."""
