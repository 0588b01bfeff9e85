"""Selective forwarding unit: forwards encoded RTP, never decodes on the forwarding path."""
