"""Transports behind one interface: open a session, send rendered messages, close."""
