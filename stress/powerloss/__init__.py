"""The power-loss model (D3): record a trace, explore every crash state a power cut may leave."""
