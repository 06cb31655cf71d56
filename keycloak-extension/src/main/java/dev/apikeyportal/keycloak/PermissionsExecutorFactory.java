package dev.apikeyportal.keycloak;

import java.util.List;
import org.keycloak.Config;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.KeycloakSessionFactory;
import org.keycloak.provider.ProviderConfigProperty;
import org.keycloak.services.clientpolicy.executor.ClientPolicyExecutorProvider;
import org.keycloak.services.clientpolicy.executor.ClientPolicyExecutorProviderFactory;

/**
 * The client policy executor {@code apikey-portal-permissions}: a client-credentials token keeps,
 * of the client's permission scopes (default scopes marked {@code portal.permission}), only those
 * the request's {@code scope} parameter names. A realm uses it through a client profile that lists
 * it ({@code {"executor": "apikey-portal-permissions", "configuration": {}}}) and a client policy
 * that applies that profile; see README.md.
 */
public final class PermissionsExecutorFactory implements ClientPolicyExecutorProviderFactory {

  static final String ID = "apikey-portal-permissions";

  @Override
  public String getId() {
    return ID;
  }

  @Override
  public ClientPolicyExecutorProvider<?> create(KeycloakSession session) {
    return new PermissionsExecutor();
  }

  @Override
  public String getHelpText() {
    return "With a scope parameter, a client-credentials access token keeps only the requested "
        + "ones of the client's default scopes marked "
        + PermissionsExecutor.MARKER
        + "=true; its other scopes are untouched. Without a scope parameter the token keeps "
        + "all of them, as Keycloak issues it.";
  }

  /** Nothing to configure: the permissions are each client's. */
  @Override
  public List<ProviderConfigProperty> getConfigProperties() {
    return List.of();
  }

  @Override
  public void init(Config.Scope config) {}

  @Override
  public void postInit(KeycloakSessionFactory factory) {}

  @Override
  public void close() {}
}
