package dev.apikeyportal.keycloak;

import java.util.EnumSet;
import java.util.Set;
import org.jboss.logging.Logger;
import org.keycloak.OAuthErrorException;
import org.keycloak.common.ClientConnection;
import org.keycloak.models.ClientModel;
import org.keycloak.models.KeycloakContext;
import org.keycloak.models.KeycloakSession;
import org.keycloak.representations.idm.ClientPolicyExecutorConfigurationRepresentation;
import org.keycloak.services.clientpolicy.ClientPolicyContext;
import org.keycloak.services.clientpolicy.ClientPolicyEvent;
import org.keycloak.services.clientpolicy.ClientPolicyException;
import org.keycloak.services.clientpolicy.executor.ClientPolicyExecutorProvider;

/**
 * Refuses a token request from outside the client's network ranges (its attribute {@value
 * #ATTRIBUTE}): Keycloak has no address allow-list for the client-credentials grant. A client
 * without ranges is not limited; ranges that cannot be read refuse every request (fail closed).
 *
 * <p>The caller's address is {@link ClientConnection#getRemoteAddr()}: Keycloak's own, which behind
 * a reverse proxy is the proxy's unless Keycloak runs with {@code proxy-headers=xforwarded} or
 * {@code forwarded} (and then the header is trusted, so the proxy must set it and Keycloak must be
 * reachable only through the proxy).
 */
public final class NetworksExecutor
    implements ClientPolicyExecutorProvider<ClientPolicyExecutorConfigurationRepresentation> {

  /** The client attribute the portal writes: CIDR ranges, comma-separated. */
  public static final String ATTRIBUTE = "portal.networks";

  /**
   * The error detail of a refusal from an address outside the ranges. Keycloak puts it in the
   * CLIENT_LOGIN_ERROR event's {@code client_policy_error_detail}; the portal counts these apart.
   */
  public static final String NOT_ALLOWED = "portal.networks: not allowed from this address";

  /** The error detail of a refusal because the attribute is not a list of ranges. */
  public static final String UNREADABLE = "portal.networks: unreadable ranges";

  /**
   * The requests that issue tokens, after the client has authenticated (Keycloak has put it in the
   * session's context by then). The client-credentials grant is the one API keys use; the others
   * are here so that a client with other grants enabled cannot go around its ranges.
   */
  static final Set<ClientPolicyEvent> TOKEN_REQUESTS =
      EnumSet.of(
          ClientPolicyEvent.SERVICE_ACCOUNT_TOKEN_REQUEST,
          ClientPolicyEvent.TOKEN_REQUEST,
          ClientPolicyEvent.TOKEN_REFRESH,
          ClientPolicyEvent.TOKEN_EXCHANGE_REQUEST,
          ClientPolicyEvent.RESOURCE_OWNER_PASSWORD_CREDENTIALS_REQUEST,
          ClientPolicyEvent.DEVICE_TOKEN_REQUEST,
          ClientPolicyEvent.BACKCHANNEL_TOKEN_REQUEST,
          ClientPolicyEvent.JWT_AUTHORIZATION_GRANT);

  private static final Logger LOG = Logger.getLogger(NetworksExecutor.class);

  private final KeycloakSession session;

  NetworksExecutor(KeycloakSession session) {
    this.session = session;
  }

  @Override
  public String getProviderId() {
    return NetworksExecutorFactory.ID;
  }

  @Override
  public void executeOnEvent(ClientPolicyContext context) throws ClientPolicyException {
    if (!TOKEN_REQUESTS.contains(context.getEvent())) {
      return;
    }
    KeycloakContext keycloak = session.getContext();
    ClientModel client = keycloak.getClient();
    if (client == null) {
      return; // no client authenticated (not a key's request): no ranges to apply
    }
    ClientConnection connection = keycloak.getConnection();
    check(
        client.getClientId(),
        client.getAttribute(ATTRIBUTE),
        connection == null ? null : connection.getRemoteAddr());
  }

  /**
   * Refuses {@code address} unless {@code ranges} (the attribute's value) is empty or holds it. The
   * error is {@code unauthorized_client}: the client is known and authenticated, and not allowed
   * this grant from there (RFC 6749, 5.2).
   */
  static void check(String clientId, String ranges, String address) throws ClientPolicyException {
    Networks networks;
    try {
      networks = Networks.parse(ranges);
    } catch (IllegalArgumentException e) {
      LOG.debugf("%s: %s (%s): refusing every token request", clientId, UNREADABLE, e.getMessage());
      throw new ClientPolicyException(OAuthErrorException.UNAUTHORIZED_CLIENT, UNREADABLE);
    }
    if (networks.isEmpty() || networks.contains(address)) {
      return;
    }
    LOG.debugf(
        "%s: refused a token request from %s, outside its network ranges", clientId, address);
    throw new ClientPolicyException(OAuthErrorException.UNAUTHORIZED_CLIENT, NOT_ALLOWED);
  }
}
