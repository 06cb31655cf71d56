# Keycloak with the portal's event listener (keycloak-extension/) in providers/, built here
# with Maven against the same Keycloak version. docker-compose builds it.
FROM maven:3.9-eclipse-temurin-17 AS listener
WORKDIR /build
COPY keycloak-extension/pom.xml .
RUN mvn -B -q dependency:go-offline
COPY keycloak-extension/src src
RUN mvn -B -q package

FROM quay.io/keycloak/keycloak:26.7.3
COPY --from=listener /build/target/apikey-portal-event-listener.jar /opt/keycloak/providers/
