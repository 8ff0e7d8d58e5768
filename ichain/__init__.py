"""iChain: a peer-to-peer marketplace for machine-learning compute on Ethereum."""

__version__ = "0.1.0"
