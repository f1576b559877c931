"""The tools the relay runs for the model: schema, registry, built-ins, HTTP tools."""
