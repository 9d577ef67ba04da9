"""Storage backends; each implements the batch primitives of :class:`mummi_io.core.contract.Backend`."""
