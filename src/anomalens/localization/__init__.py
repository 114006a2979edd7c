"""From patch scores to pixel maps, masks and boxes."""
