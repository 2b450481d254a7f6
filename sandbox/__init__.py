"""The local sandbox: a real Kafka broker, a schema registry, emulators of Salesforce and Sage 100.

Nothing in sagesf/, connectors/ or processors/ imports this package; it starts them as processes.
"""
