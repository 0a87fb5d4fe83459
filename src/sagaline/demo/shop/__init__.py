"""The order saga as choreography: four services, each its own process and database.

Order writes the order and publishes ``OrderCreated`` → Payment charges,
``PaymentSucceeded`` → Inventory reserves, ``InventoryReserved`` → Shipping books,
``ShipmentBooked`` → Order completes it (``OrderCompleted``). Out of stock: Inventory's
handler fails, its ``on_failure`` publishes ``InventoryFailed`` → Payment refunds,
``RefundIssued`` → Order cancels it (``OrderCancelled``). ``examples/choreography/`` has
the same services as files to copy.
"""
