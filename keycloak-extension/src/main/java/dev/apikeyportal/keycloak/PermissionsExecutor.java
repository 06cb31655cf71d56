package dev.apikeyportal.keycloak;

import java.util.Arrays;
import java.util.Map;
import java.util.Set;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.keycloak.OAuth2Constants;
import org.keycloak.models.AuthenticatedClientSessionModel;
import org.keycloak.models.ClientModel;
import org.keycloak.models.ClientScopeModel;
import org.keycloak.protocol.oidc.TokenManager.AccessTokenResponseBuilder;
import org.keycloak.representations.AccessToken;
import org.keycloak.representations.idm.ClientPolicyExecutorConfigurationRepresentation;
import org.keycloak.services.clientpolicy.ClientPolicyContext;
import org.keycloak.services.clientpolicy.ClientPolicyEvent;
import org.keycloak.services.clientpolicy.context.ServiceAccountTokenResponseContext;
import org.keycloak.services.clientpolicy.executor.ClientPolicyExecutorProvider;

/**
 * Lets a key ask for fewer of its permissions: a client-credentials token request with a {@code
 * scope} parameter gets, of the client's permission scopes, only those it names (RFC 6749, 3.3: the
 * server issues the scope requested, or a narrower one).
 *
 * <p>A key's permissions are client scopes marked {@value #MARKER}{@code = "true"} and attached to
 * its client as default scopes, so a request without {@code scope} gets all of them. Keycloak
 * always adds a client's default scopes whatever {@code scope} says (it only refuses, {@code
 * invalid_scope}, a name the client does not have), so without this executor a key could not ask
 * for less. This removes from the access token's {@code scope} claim every permission of the client
 * that the request did not name; every other word (the API's audience scope, {@code openid}, ...)
 * stays, in its order. A request without {@code scope}, or a client without permission scopes, is
 * left as Keycloak made it.
 *
 * <p>It runs on {@link ClientPolicyEvent#SERVICE_ACCOUNT_TOKEN_RESPONSE}, after Keycloak has built
 * the access token and before it signs it. Keycloak writes the token response's own {@code scope}
 * field afterwards from the client session's scopes, so that field still lists every permission of
 * the key while the token carries only the requested ones: the token is what resource servers
 * check.
 */
public final class PermissionsExecutor
    implements ClientPolicyExecutorProvider<ClientPolicyExecutorConfigurationRepresentation> {

  /** The client scope attribute the portal writes on each permission's scope. */
  public static final String MARKER = "portal.permission";

  @Override
  public String getProviderId() {
    return PermissionsExecutorFactory.ID;
  }

  @Override
  public void executeOnEvent(ClientPolicyContext context) {
    if (context.getEvent() != ClientPolicyEvent.SERVICE_ACCOUNT_TOKEN_RESPONSE
        || !(context instanceof ServiceAccountTokenResponseContext response)) {
      return;
    }
    String requested =
        response.getParams() == null ? null : response.getParams().getFirst(OAuth2Constants.SCOPE);
    if (requested == null || requested.isBlank()) {
      return;
    }
    AuthenticatedClientSessionModel clientSession = response.getClientSession();
    ClientModel client = clientSession == null ? null : clientSession.getClient();
    AccessTokenResponseBuilder builder = response.getAccessTokenResponseBuilder();
    AccessToken token = builder == null ? null : builder.getAccessToken();
    if (client == null || token == null) {
      return;
    }
    Set<String> permissions = permissions(client);
    if (!permissions.isEmpty() && token.getScope() != null) {
      Set<String> names = words(requested).collect(Collectors.toUnmodifiableSet());
      token.setScope(narrow(token.getScope(), names, permissions));
    }
  }

  /** The names of the client's permission scopes: its default scopes carrying the marker. */
  static Set<String> permissions(ClientModel client) {
    Map<String, ClientScopeModel> defaults = client.getClientScopes(true);
    if (defaults == null) {
      return Set.of();
    }
    return defaults.entrySet().stream()
        .filter(scope -> "true".equals(scope.getValue().getAttribute(MARKER)))
        .map(Map.Entry::getKey)
        .collect(Collectors.toUnmodifiableSet());
  }

  /**
   * {@code scope} (the token's claim) without the {@code permissions} that are not {@code
   * requested}; the other words as they were, in their order.
   */
  static String narrow(String scope, Set<String> requested, Set<String> permissions) {
    return words(scope)
        .filter(word -> !permissions.contains(word) || requested.contains(word))
        .collect(Collectors.joining(" "));
  }

  /** The words of a scope string (RFC 6749, 3.3: separated by spaces). */
  private static Stream<String> words(String scope) {
    return Arrays.stream(scope.split("\\s+")).filter(word -> !word.isEmpty());
  }
}
