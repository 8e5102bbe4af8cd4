"""Provider adapters: one module per SMS gateway, each behind :class:`providers.base.Provider`.

Adding a provider means one new module and one line in :data:`providers.registry.ADAPTERS`.
"""
