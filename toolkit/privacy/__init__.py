"""The privacy job: `veil privacy` (speaker leakage per layer, attackers trained on what they attack), the GRL
sweep (`veil sweep`) and the attempts log (`veil attempts`)."""
