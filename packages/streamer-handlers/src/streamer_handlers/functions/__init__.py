"""The four Lambda entry points, one module each so each function imports only what it needs."""
