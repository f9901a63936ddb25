"""The selection function: completeness over Einstein radius x seeing x depth (x source and
lensed magnitude), measured by injecting arcs into real hosts and scoring them."""
