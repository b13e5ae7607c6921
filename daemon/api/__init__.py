"""The socket API: its bodies and route table (the contract), the handlers, their context,
query parameters, predict, and the OpenAPI document generated from the contract."""
