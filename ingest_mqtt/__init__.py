"""MQTT in: a bridge from broker topics to the same validation, tokenization and landing as HTTP."""
