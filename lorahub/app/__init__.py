"""The use cases that combine the registry with the engine (generate, preview, grid, slot planning).

The CLI and the server each parse their input, call one function here, and render the result, so a
request runs the same resolution, checks and recording whichever door it came in by. Importing
this package imports no torch: the engine is imported inside the functions that need it.
"""
