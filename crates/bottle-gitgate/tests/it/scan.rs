//! The scanner on its own, against repositories built with git.
