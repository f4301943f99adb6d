"""Reading a spooled file: its CSV dialect, its field types, the template applied to its header,
its rows into contacts, in a thread or a process of its own ahead of the writing."""
