"""The threadstore benchmark (``make bench``): threadstore against a raw-driver floor."""
