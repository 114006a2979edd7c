"""Reading images and writing outputs safely."""
