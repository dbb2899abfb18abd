"""Qt-free Slicer logic of BSAFusion: MRML nodes <-> SimpleITK images, output nodes, dependencies."""
