package dev.apikeyportal.keycloak;

import static org.junit.jupiter.api.Assertions.assertDoesNotThrow;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.reflect.Proxy;
import java.util.Map;
import java.util.ServiceLoader;
import org.junit.jupiter.api.Test;
import org.keycloak.common.ClientConnection;
import org.keycloak.models.ClientModel;
import org.keycloak.models.KeycloakContext;
import org.keycloak.models.KeycloakSession;
import org.keycloak.services.clientpolicy.ClientPolicyContext;
import org.keycloak.services.clientpolicy.ClientPolicyEvent;
import org.keycloak.services.clientpolicy.ClientPolicyException;
import org.keycloak.services.clientpolicy.executor.ClientPolicyExecutorProviderFactory;

class NetworksExecutorTest {

  private static final ClientPolicyContext GRANT =
      () -> ClientPolicyEvent.SERVICE_ACCOUNT_TOKEN_REQUEST;

  @Test
  void theDetailsAreWhatThePortalMatches() {
    assertEquals("portal.networks", NetworksExecutor.ATTRIBUTE);
    assertEquals("portal.networks: not allowed from this address", NetworksExecutor.NOT_ALLOWED);
    assertEquals("portal.networks: unreadable ranges", NetworksExecutor.UNREADABLE);
  }

  @Test
  void aClientWithoutRangesIsNotLimited() {
    assertDoesNotThrow(() -> executor(null, "198.51.100.7").executeOnEvent(GRANT));
    assertDoesNotThrow(() -> executor("", "198.51.100.7").executeOnEvent(GRANT));
    assertDoesNotThrow(() -> executor(" ", null).executeOnEvent(GRANT));
  }

  @Test
  void aCallerInsideTheRangesGetsItsToken() {
    assertDoesNotThrow(
        () -> executor("203.0.113.0/24,2001:db8::/32", "203.0.113.5").executeOnEvent(GRANT));
    assertDoesNotThrow(
        () -> executor("203.0.113.0/24,2001:db8::/32", "2001:db8::5").executeOnEvent(GRANT));
    assertDoesNotThrow(
        () -> executor("203.0.113.0/24", "::ffff:203.0.113.5").executeOnEvent(GRANT));
  }

  @Test
  void aCallerOutsideTheRangesIsRefused() {
    ClientPolicyException e =
        assertThrows(
            ClientPolicyException.class,
            () -> executor("203.0.113.0/24", "198.51.100.7").executeOnEvent(GRANT));

    assertEquals("unauthorized_client", e.getError());
    assertEquals("portal.networks: not allowed from this address", e.getErrorDetail());
  }

  @Test
  void aCallerWithoutAnAddressIsRefused() {
    ClientPolicyException e =
        assertThrows(
            ClientPolicyException.class,
            () -> executor("203.0.113.0/24", null).executeOnEvent(GRANT));

    assertEquals(NetworksExecutor.NOT_ALLOWED, e.getErrorDetail());
  }

  @Test
  void unreadableRangesRefuseEveryone() {
    ClientPolicyException e =
        assertThrows(
            ClientPolicyException.class,
            () -> executor("203.0.113.0/24, example.com", "203.0.113.5").executeOnEvent(GRANT));

    assertEquals("unauthorized_client", e.getError());
    assertEquals("portal.networks: unreadable ranges", e.getErrorDetail());
  }

  @Test
  void everyTokenRequestIsChecked() {
    for (ClientPolicyEvent event : NetworksExecutor.TOKEN_REQUESTS) {
      assertThrows(
          ClientPolicyException.class,
          () -> executor("203.0.113.0/24", "198.51.100.7").executeOnEvent(() -> event),
          event.name());
    }
    assertTrue(NetworksExecutor.TOKEN_REQUESTS.contains(ClientPolicyEvent.TOKEN_REQUEST));
    assertTrue(NetworksExecutor.TOKEN_REQUESTS.contains(ClientPolicyEvent.TOKEN_REFRESH));
  }

  @Test
  void otherEventsAreLeftAlone() {
    assertDoesNotThrow(
        () ->
            executor("203.0.113.0/24", "198.51.100.7")
                .executeOnEvent(() -> ClientPolicyEvent.TOKEN_REVOKE));
    assertDoesNotThrow(
        () ->
            executor("203.0.113.0/24", "198.51.100.7")
                .executeOnEvent(() -> ClientPolicyEvent.UPDATE));
  }

  @Test
  void withoutAClientThereIsNothingToApply() {
    KeycloakContext context =
        fake(KeycloakContext.class, Map.of("getConnection", connection("198.51.100.7")));
    KeycloakSession session = fake(KeycloakSession.class, Map.of("getContext", context));

    assertDoesNotThrow(() -> new NetworksExecutor(session).executeOnEvent(GRANT));
  }

  @Test
  void keycloakFindsTheFactory() {
    ClientPolicyExecutorProviderFactory factory =
        ServiceLoader.load(ClientPolicyExecutorProviderFactory.class).stream()
            .map(ServiceLoader.Provider::get)
            .filter(found -> found.getId().equals("apikey-portal-networks"))
            .findFirst()
            .orElseThrow();

    assertTrue(factory.getConfigProperties().isEmpty());
    assertEquals("apikey-portal-networks", factory.create(null).getProviderId());
  }

  private static NetworksExecutor executor(String ranges, String address) {
    ClientModel client =
        fake(
            ClientModel.class,
            ranges == null
                ? Map.of("getClientId", "apikey-test")
                : Map.of("getClientId", "apikey-test", "getAttribute:portal.networks", ranges));
    KeycloakContext context =
        fake(
            KeycloakContext.class,
            Map.of("getClient", client, "getConnection", connection(address)));
    return new NetworksExecutor(fake(KeycloakSession.class, Map.of("getContext", context)));
  }

  private static ClientConnection connection(String address) {
    return fake(
        ClientConnection.class, address == null ? Map.of() : Map.of("getRemoteAddr", address));
  }

  /**
   * A Keycloak interface answering only the methods in {@code answers} ({@code name}, or {@code
   * name:argument} for a method of one argument); null for any other.
   */
  private static <T> T fake(Class<T> type, Map<String, Object> answers) {
    return type.cast(
        Proxy.newProxyInstance(
            type.getClassLoader(),
            new Class<?>[] {type},
            (proxy, method, args) -> {
              String key =
                  args != null && args.length == 1
                      ? method.getName() + ":" + args[0]
                      : method.getName();
              return answers.get(key);
            }));
  }
}
