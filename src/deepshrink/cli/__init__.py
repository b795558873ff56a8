"""The thin command-line layer: parse, validate, call the library, print."""
