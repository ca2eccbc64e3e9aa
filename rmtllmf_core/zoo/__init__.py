"""Model zoos: the embedded tiny CLIP zoo and real open_clip zoos, all through one loader."""
