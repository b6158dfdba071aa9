"""The cloud half: the streaming protocol, the suffix service (`veil serve`) and its reference client."""
