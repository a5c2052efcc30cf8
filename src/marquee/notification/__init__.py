"""Notification: emails and SMS sent once for each order event."""
