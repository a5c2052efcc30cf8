"""Booking: orders, seat locks, payments, e-tickets, refunds and the order state machine."""
