"""The relay: an authenticated, GA-speaking WebSocket bridge to OpenAI Realtime.

Run as ``python -m relay``.
"""
