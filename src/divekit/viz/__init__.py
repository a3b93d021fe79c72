"""Figures of the book (D2L): image grids and training curves, drawn without a display."""
