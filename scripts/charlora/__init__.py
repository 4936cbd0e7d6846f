"""charlora: the library behind the workflow. Rule scripts in ../ are thin wrappers around it."""
