"""The socket API: the route table, its handlers, parameters, predict, the OpenAPI document."""
