"""bascule's version, in a module of its own: modules of the pure core read it without importing the
package's front door (which reaches the runner)."""

__version__ = "0.1.0"
