"""Monitors over the analytics tables: checks that raise alerts, never break ingestion."""
