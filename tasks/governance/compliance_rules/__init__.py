"""Built-in compliance rule sets (GDPR, EU AI Act, CCPA, HIPAA, SOC 2) as YAML package data."""
