"""The reference RAG stack: gateway, retriever, store and llm services, and its knowledge base.

Each service is an ASGI app configured only by flags or environment variables, so the same
code runs as a local process, in a container or in a Kubernetes pod.
"""
