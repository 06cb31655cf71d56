package dev.apikeyportal.keycloak;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.Map;
import java.util.UUID;
import org.junit.jupiter.api.Test;
import org.keycloak.events.Event;
import org.keycloak.events.EventType;
import org.keycloak.events.admin.AdminEvent;
import org.keycloak.events.admin.OperationType;
import org.keycloak.events.admin.ResourceType;

class PortalEventsTest {

  private static final String PREFIX = "apikey-";

  @Test
  void itForwardsTheClientLoginsOfKeys() {
    assertTrue(PortalEvents.isForwarded(event(EventType.CLIENT_LOGIN, "apikey-1"), PREFIX));
    assertTrue(PortalEvents.isForwarded(event(EventType.CLIENT_LOGIN_ERROR, "apikey-1"), PREFIX));
  }

  @Test
  void itIgnoresTheClientLoginsOfOtherClients() {
    assertFalse(PortalEvents.isForwarded(event(EventType.CLIENT_LOGIN, "portal-service"), PREFIX));
    assertFalse(PortalEvents.isForwarded(event(EventType.CLIENT_LOGIN_ERROR, "portal"), PREFIX));
    assertFalse(PortalEvents.isForwarded(event(EventType.CLIENT_LOGIN, null), PREFIX));
    assertFalse(PortalEvents.isForwarded(event(EventType.CLIENT_LOGIN, "apikey-1"), "key-"));
  }

  @Test
  void itForwardsAUserDeletingTheirAccountWhateverTheClient() {
    assertTrue(
        PortalEvents.isForwarded(event(EventType.DELETE_ACCOUNT, "account-console"), PREFIX));
  }

  @Test
  void itIgnoresOtherUserEvents() {
    assertFalse(PortalEvents.isForwarded(event(EventType.LOGIN, "apikey-1"), PREFIX));
    assertFalse(PortalEvents.isForwarded(event(EventType.CODE_TO_TOKEN, "apikey-1"), PREFIX));
    assertFalse(
        PortalEvents.isForwarded(event(EventType.DELETE_ACCOUNT_ERROR, "account-console"), PREFIX));
  }

  @Test
  void itForwardsUsersUpdatedOrDeleted() {
    assertTrue(
        PortalEvents.isForwarded(admin(ResourceType.USER, OperationType.UPDATE, "users/u1")));
    assertTrue(
        PortalEvents.isForwarded(admin(ResourceType.USER, OperationType.DELETE, "users/u1")));
  }

  @Test
  void itIgnoresUsersCreatedAndUserActions() {
    assertFalse(
        PortalEvents.isForwarded(admin(ResourceType.USER, OperationType.CREATE, "users/u1")));
    assertFalse(
        PortalEvents.isForwarded(
            admin(ResourceType.USER, OperationType.ACTION, "users/u1/logout")));
  }

  @Test
  void itForwardsTheRealmRolesOfUsersGrantedOrRemoved() {
    String path = "users/u1/role-mappings/realm";
    assertTrue(
        PortalEvents.isForwarded(
            admin(ResourceType.REALM_ROLE_MAPPING, OperationType.CREATE, path)));
    assertTrue(
        PortalEvents.isForwarded(
            admin(ResourceType.REALM_ROLE_MAPPING, OperationType.DELETE, path)));
  }

  @Test
  void itIgnoresTheRealmRolesOfGroupsAndClients() {
    assertFalse(
        PortalEvents.isForwarded(
            admin(
                ResourceType.REALM_ROLE_MAPPING,
                OperationType.CREATE,
                "groups/g1/role-mappings/realm")));
    assertFalse(
        PortalEvents.isForwarded(
            admin(
                ResourceType.REALM_ROLE_MAPPING,
                OperationType.CREATE,
                "clients/c1/scope-mappings/realm")));
    assertFalse(
        PortalEvents.isForwarded(
            admin(
                ResourceType.REALM_ROLE_MAPPING,
                OperationType.UPDATE,
                "users/u1/role-mappings/realm")));
  }

  @Test
  void itIgnoresOtherAdminEvents() {
    assertFalse(
        PortalEvents.isForwarded(admin(ResourceType.CLIENT, OperationType.DELETE, "clients/c1")));
    assertFalse(
        PortalEvents.isForwarded(
            admin(
                ResourceType.CLIENT_ROLE_MAPPING,
                OperationType.CREATE,
                "users/u1/role-mappings/clients/c1")));
  }

  @Test
  void onlyAFailedClientLoginCountsAsAnAttempt() {
    assertTrue(PortalEvents.isAttempt(event(EventType.CLIENT_LOGIN_ERROR, "apikey-1")));
    assertFalse(PortalEvents.isAttempt(event(EventType.CLIENT_LOGIN, "apikey-1")));
    assertFalse(PortalEvents.isAttempt(event(EventType.DELETE_ACCOUNT, "account-console")));
  }

  @Test
  void aUserEventLooksLikeKeycloaksEventRepresentation() {
    Event event = event(EventType.CLIENT_LOGIN_ERROR, "apikey-1");
    event.setId("e1");
    event.setError("invalid_client_credentials");
    event.setDetails(Map.of("grant_type", "client_credentials"));

    ObjectNode json = PortalEvents.toJson(event);

    assertEquals(
        "{\"kind\":\"event\",\"id\":\"e1\",\"time\":1700000000123,\"type\":\"CLIENT_LOGIN_ERROR\","
            + "\"realmId\":\"r1\",\"clientId\":\"apikey-1\",\"userId\":\"u1\",\"ipAddress\":\"127.0.0.1\","
            + "\"error\":\"invalid_client_credentials\",\"details\":{\"grant_type\":\"client_credentials\"}}",
        json.toString());
  }

  @Test
  void aUserEventWithoutErrorOrDetailsHasNullAndAnEmptyObject() {
    Event event = event(EventType.CLIENT_LOGIN, "apikey-1");

    ObjectNode json = PortalEvents.toJson(event);

    assertTrue(json.get("error").isNull());
    assertEquals(0, json.get("details").size());
  }

  @Test
  void anAdminEventLooksLikeKeycloaksAdminEventRepresentation() {
    AdminEvent event = admin(ResourceType.USER, OperationType.UPDATE, "users/u1");
    event.setId("a1");
    event.setRepresentation("{\"enabled\":false}");

    ObjectNode json = PortalEvents.toJson(event, true);

    assertEquals(
        "{\"kind\":\"admin\",\"id\":\"a1\",\"time\":1700000000123,\"realmId\":\"r1\","
            + "\"operationType\":\"UPDATE\",\"resourceType\":\"USER\",\"resourcePath\":\"users/u1\","
            + "\"representation\":\"{\\\"enabled\\\":false}\"}",
        json.toString());
  }

  @Test
  void anAdminEventOfARealmWithoutDetailsHasNoRepresentation() {
    AdminEvent event = admin(ResourceType.USER, OperationType.UPDATE, "users/u1");
    event.setRepresentation("{\"enabled\":false}");

    assertTrue(PortalEvents.toJson(event, false).get("representation").isNull());
  }

  @Test
  void anEventWithoutIdGetsARandomOne() {
    ObjectNode json = PortalEvents.toJson(event(EventType.CLIENT_LOGIN, "apikey-1"));

    UUID.fromString(json.get("id").asText());
  }

  private static Event event(EventType type, String clientId) {
    Event event = new Event();
    event.setType(type);
    event.setTime(1700000000123L);
    event.setRealmId("r1");
    event.setClientId(clientId);
    event.setUserId("u1");
    event.setIpAddress("127.0.0.1");
    return event;
  }

  private static AdminEvent admin(ResourceType resource, OperationType operation, String path) {
    AdminEvent event = new AdminEvent();
    event.setTime(1700000000123L);
    event.setRealmId("r1");
    event.setResourceType(resource);
    event.setOperationType(operation);
    event.setResourcePath(path);
    return event;
  }
}
