"""Wire codecs for streams into containers (SPDY/3.1, Kubernetes WebSocket channels, raw upgrades).

Both the API server (which relays the streams) and the node agent (which ends them) use these;
nothing here knows a handler, a pod or a container.
"""
