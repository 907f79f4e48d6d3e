"""Segmentation: the U-Net task of the generic loop (``task``), training and validating a fold (``run``), and
the sliding-window prediction of a case with the label map in its original geometry (``prediction``)."""
