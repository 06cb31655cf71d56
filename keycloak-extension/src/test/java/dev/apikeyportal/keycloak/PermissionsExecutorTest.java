package dev.apikeyportal.keycloak;

import static org.junit.jupiter.api.Assertions.assertDoesNotThrow;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import jakarta.ws.rs.core.MultivaluedHashMap;
import jakarta.ws.rs.core.MultivaluedMap;
import java.lang.reflect.Proxy;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.ServiceLoader;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.keycloak.models.AuthenticatedClientSessionModel;
import org.keycloak.models.ClientModel;
import org.keycloak.models.ClientScopeModel;
import org.keycloak.protocol.oidc.TokenManager;
import org.keycloak.representations.AccessToken;
import org.keycloak.services.clientpolicy.ClientPolicyEvent;
import org.keycloak.services.clientpolicy.context.ServiceAccountTokenRequestContext;
import org.keycloak.services.clientpolicy.context.ServiceAccountTokenResponseContext;
import org.keycloak.services.clientpolicy.executor.ClientPolicyExecutorProviderFactory;

class PermissionsExecutorTest {

  /** A key of the API "billing" with three permissions, and a scope that is not a permission. */
  private static final Map<String, ClientScopeModel> KEY_SCOPES =
      Map.of(
          "billing", scope(null),
          "invoices:read", scope("true"),
          "invoices:write", scope("true"),
          "payments:read", scope("true"),
          "profile", scope("false"));

  private static final String ALL = "billing invoices:read invoices:write payments:read profile";

  @Test
  void theMarkerIsWhatThePortalWrites() {
    assertEquals("portal.permission", PermissionsExecutor.MARKER);
  }

  @Test
  void aRequestNarrowsTheTokenToThePermissionsItNames() {
    AccessToken token = token(ALL);

    respond(token, KEY_SCOPES, "invoices:read");

    assertEquals("billing invoices:read profile", token.getScope());
  }

  @Test
  void everyRequestedPermissionIsKept() {
    AccessToken token = token(ALL);

    respond(token, KEY_SCOPES, "payments:read  invoices:read");

    assertEquals("billing invoices:read payments:read profile", token.getScope());
  }

  @Test
  void withoutAScopeParameterTheTokenKeepsEveryPermission() {
    for (String requested : new String[] {null, "", "  "}) {
      AccessToken token = token(ALL);

      respond(token, KEY_SCOPES, requested);

      assertEquals(ALL, token.getScope(), String.valueOf(requested));
    }
  }

  @Test
  void theOtherScopesStayInTheirOrder() {
    AccessToken token = token("openid payments:read billing invoices:read email");

    respond(token, KEY_SCOPES, "openid invoices:read");

    assertEquals("openid billing invoices:read email", token.getScope());
  }

  @Test
  void askingOnlyForTheApiLeavesNoPermission() {
    AccessToken token = token(ALL);

    respond(token, KEY_SCOPES, "billing");

    assertEquals("billing profile", token.getScope());
  }

  @Test
  void aClientWithoutPermissionScopesIsUntouched() {
    Map<String, ClientScopeModel> unmarked =
        Map.of("billing", scope(null), "invoices:read", scope("false"), "email", scope("TRUE"));
    for (Map<String, ClientScopeModel> scopes :
        List.of(unmarked, Map.<String, ClientScopeModel>of())) {
      AccessToken token = token("billing invoices:read email");

      respond(token, scopes, "email");

      assertEquals("billing invoices:read email", token.getScope());
    }
  }

  @Test
  void onlyTheClientsDefaultScopesArePermissions() {
    ClientModel client =
        fake(
            ClientModel.class,
            Map.of(
                "getClientScopes:true", Map.of("invoices:read", scope("true")),
                "getClientScopes:false", Map.of("invoices:write", scope("true"))));

    assertEquals(Set.of("invoices:read"), PermissionsExecutor.permissions(client));
  }

  @Test
  void otherEventsAreLeftAlone() {
    PermissionsExecutor executor = new PermissionsExecutor();
    MultivaluedMap<String, String> params = params("invoices:read");

    assertDoesNotThrow(
        () ->
            executor.executeOnEvent(
                new ServiceAccountTokenRequestContext(params, clientSession(KEY_SCOPES))));
    for (ClientPolicyEvent event : ClientPolicyEvent.values()) {
      assertDoesNotThrow(() -> executor.executeOnEvent(() -> event), event.name());
    }
  }

  @Test
  void aResponseWithoutTokenOrClientIsLeftAlone() {
    PermissionsExecutor executor = new PermissionsExecutor();
    MultivaluedMap<String, String> params = params("invoices:read");
    AuthenticatedClientSessionModel withoutClient =
        fake(AuthenticatedClientSessionModel.class, Map.of());
    AccessToken withoutScope = token(null);

    assertDoesNotThrow(
        () -> executor.executeOnEvent(new ServiceAccountTokenResponseContext(params, null, null)));
    assertDoesNotThrow(
        () ->
            executor.executeOnEvent(
                new ServiceAccountTokenResponseContext(params, withoutClient, builder(null))));
    assertDoesNotThrow(
        () -> executor.executeOnEvent(new ServiceAccountTokenResponseContext(null, null, null)));
    respond(withoutScope, KEY_SCOPES, "invoices:read");
    assertNull(withoutScope.getScope());
  }

  @Test
  void keycloakFindsTheFactory() {
    ClientPolicyExecutorProviderFactory factory =
        ServiceLoader.load(ClientPolicyExecutorProviderFactory.class).stream()
            .map(ServiceLoader.Provider::get)
            .filter(found -> found.getId().equals("apikey-portal-permissions"))
            .findFirst()
            .orElseThrow();

    assertTrue(factory.getConfigProperties().isEmpty());
    assertEquals("apikey-portal-permissions", factory.create(null).getProviderId());
  }

  /** Runs the executor on the response to a client-credentials request with {@code requested}. */
  private static void respond(
      AccessToken token, Map<String, ClientScopeModel> defaultScopes, String requested) {
    new PermissionsExecutor()
        .executeOnEvent(
            new ServiceAccountTokenResponseContext(
                params(requested), clientSession(defaultScopes), builder(token)));
  }

  private static MultivaluedMap<String, String> params(String scope) {
    MultivaluedMap<String, String> params = new MultivaluedHashMap<>();
    params.putSingle("grant_type", "client_credentials");
    if (scope != null) {
      params.putSingle("scope", scope);
    }
    return params;
  }

  private static AuthenticatedClientSessionModel clientSession(
      Map<String, ClientScopeModel> defaultScopes) {
    ClientModel client =
        fake(
            ClientModel.class,
            Map.of("getClientId", "apikey-test", "getClientScopes:true", defaultScopes));
    return fake(AuthenticatedClientSessionModel.class, Map.of("getClient", client));
  }

  /** Keycloak's own response builder, holding {@code token} as its grant leaves it. */
  private static TokenManager.AccessTokenResponseBuilder builder(AccessToken token) {
    ClientModel client = fake(ClientModel.class, Map.of());
    return new TokenManager()
        .responseBuilder(null, client, null, null, null, null)
        .accessToken(token);
  }

  private static AccessToken token(String scope) {
    AccessToken token = new AccessToken();
    token.setScope(scope);
    return token;
  }

  private static ClientScopeModel scope(String marker) {
    Map<String, Object> answers = new HashMap<>();
    if (marker != null) {
      answers.put("getAttribute:portal.permission", marker);
    }
    return fake(ClientScopeModel.class, answers);
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
