package dev.apikeyportal.keycloak;

import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.UUID;
import org.keycloak.events.Event;
import org.keycloak.events.EventType;
import org.keycloak.events.admin.AdminEvent;
import org.keycloak.events.admin.OperationType;

/**
 * Which of Keycloak's events the portal hears about, and how they look on the wire: the shape of
 * Keycloak's admin REST representations (GET .../events and .../admin-events), so that the portal
 * reads pushed and polled events with the same code.
 */
final class PortalEvents {

  private static final JsonNodeFactory JSON = JsonNodeFactory.instance;

  private PortalEvents() {}

  /** A user deleting their own account, and the client logins of the portal's keys. */
  static boolean isForwarded(Event event, String clientPrefix) {
    EventType type = event.getType();
    if (type == EventType.DELETE_ACCOUNT) {
      return true;
    }
    boolean clientLogin = type == EventType.CLIENT_LOGIN || type == EventType.CLIENT_LOGIN_ERROR;
    return clientLogin
        && event.getClientId() != null
        && event.getClientId().startsWith(clientPrefix);
  }

  /** A user updated (enabled, disabled) or deleted; a user's realm roles granted or removed. */
  static boolean isForwarded(AdminEvent event) {
    String resource = event.getResourceTypeAsString();
    OperationType operation = event.getOperationType();
    String path = event.getResourcePath();
    if ("USER".equals(resource)) {
      return operation == OperationType.UPDATE || operation == OperationType.DELETE;
    }
    return "REALM_ROLE_MAPPING".equals(resource)
        && (operation == OperationType.CREATE || operation == OperationType.DELETE)
        && path != null
        && path.startsWith("users/");
  }

  /**
   * A failed attempt records that something was tried, not a change of state, so it is sent even
   * when the transaction it happened in rolls back.
   */
  static boolean isAttempt(Event event) {
    return event.getType() == EventType.CLIENT_LOGIN_ERROR;
  }

  static ObjectNode toJson(Event event) {
    ObjectNode json = JSON.objectNode();
    json.put("kind", "event");
    json.put("id", idOrNew(event.getId()));
    json.put("time", event.getTime());
    json.put("type", event.getType() == null ? null : event.getType().name());
    json.put("realmId", event.getRealmId());
    json.put("clientId", event.getClientId());
    json.put("userId", event.getUserId());
    json.put("ipAddress", event.getIpAddress());
    json.put("error", event.getError());
    ObjectNode details = json.putObject("details");
    if (event.getDetails() != null) {
      event.getDetails().forEach(details::put);
    }
    return json;
  }

  /**
   * The admin event; its representation only when the realm stores admin events with details
   * ({@code includeRepresentation}), as Keycloak's own store does.
   */
  static ObjectNode toJson(AdminEvent event, boolean includeRepresentation) {
    ObjectNode json = JSON.objectNode();
    json.put("kind", "admin");
    json.put("id", idOrNew(event.getId()));
    json.put("time", event.getTime());
    json.put("realmId", event.getRealmId());
    json.put(
        "operationType", event.getOperationType() == null ? null : event.getOperationType().name());
    json.put("resourceType", event.getResourceTypeAsString());
    json.put("resourcePath", event.getResourcePath());
    json.put("representation", includeRepresentation ? event.getRepresentation() : null);
    return json;
  }

  /** Keycloak 26.7 gives every event an id; an event built elsewhere may have none. */
  private static String idOrNew(String id) {
    return id != null ? id : UUID.randomUUID().toString();
  }
}
