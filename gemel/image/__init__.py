"""The picture as a linking signal: the image scorer, when its score may take part (gates), the picture's
style (drawing or photo), the memory of labelled pictures, and the senses' prior removed before the picture
picks a sense."""
