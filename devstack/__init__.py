"""Development and test services the portal needs: Keycloak, PostgreSQL, a mail sink.

Nothing here is imported by the portal itself; the run and test commands (`bin/run`,
`bin/test`) and the test suite use it to start real servers on loopback.
"""
