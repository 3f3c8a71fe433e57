"""Configuration: process settings from the environment, the gateway from YAML."""
