package dev.apikeyportal.keycloak;

import java.util.List;
import org.keycloak.Config;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.KeycloakSessionFactory;
import org.keycloak.provider.ProviderConfigProperty;
import org.keycloak.services.clientpolicy.executor.ClientPolicyExecutorProvider;
import org.keycloak.services.clientpolicy.executor.ClientPolicyExecutorProviderFactory;

/**
 * The client policy executor {@code apikey-portal-networks}: limits a client's token requests to
 * the network ranges of its attribute {@code portal.networks}. A realm uses it through a client
 * profile that lists it ({@code {"executor": "apikey-portal-networks", "configuration": {}}}) and a
 * client policy that applies that profile; see README.md.
 */
public final class NetworksExecutorFactory implements ClientPolicyExecutorProviderFactory {

  static final String ID = "apikey-portal-networks";

  @Override
  public String getId() {
    return ID;
  }

  @Override
  public ClientPolicyExecutorProvider<?> create(KeycloakSession session) {
    return new NetworksExecutor(session);
  }

  @Override
  public String getHelpText() {
    return "Refuses token requests (client credentials and the other grants) from addresses "
        + "outside the client's attribute "
        + NetworksExecutor.ATTRIBUTE
        + ": CIDR ranges separated by commas or whitespace. Without the attribute, or empty, "
        + "the client is not limited; ranges that cannot be read refuse every request.";
  }

  /** Nothing to configure: the ranges are each client's. */
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
