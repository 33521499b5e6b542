// One urql client per signed-in token: HTTP with `Authorization: Bearer`, subscriptions
// over graphql-transport-ws with the same header in connection_init, and a normalised
// cache keyed by __typename:id, so an entity updated by a subscription or a mutation is
// updated on every screen that shows it.
import { Client, fetchExchange, makeOperation, mapExchange, subscriptionExchange, type Operation } from "@urql/preact";
import { cacheExchange, type Cache } from "@urql/exchange-graphcache";
import { createClient as createWsClient, type Client as WsClient } from "graphql-ws";

// Types without an id are embedded in their parent rather than normalised.
const embedded = [
  "Approval",
  "ApprovalPolicy",
  "ApprovalRequirement",
  "AccessGrant",
  "Decision",
  "ActionDecision",
  "RequestActions",
  "DeploymentStep",
  "GroupQuorum",
  "WeeklyWindow",
  "PageInfo",
  "IssuedApiToken",
  "ApprovalRequestConnection",
  "ApprovalRequestEdge",
  "DeploymentConnection",
  "DeploymentEdge",
  "ImageConnection",
  "ImageEdge",
  "UserConnection",
  "UserEdge",
  "ApiTokenConnection",
  "ApiTokenEdge",
  "GroupConnection",
  "GroupEdge",
  "RoleBindingConnection",
  "RoleBindingEdge",
  "AuditEventConnection",
  "AuditEventEdge",
  "OutboxEmailConnection",
  "OutboxEmailEdge",
];

export type Session = { client: Client; close: () => void };

export function openSession(token: string, onSocketClosed: (reason: string) => void): Session {
  const authorization = `Bearer ${token}`;
  const origin = window.location.origin;
  const ws: WsClient = createWsClient({
    url: origin.replace(/^http/, "ws") + "/graphql",
    connectionParams: { Authorization: authorization },
    lazy: true,
    retryAttempts: 5,
    on: {
      closed: (event) => {
        const close = event as CloseEvent;
        if (close && close.code === 4403) onSocketClosed(close.reason || "signed out by the server");
      },
    },
  });

  // Whatever the server says changed, lists that may now hold it are read again: the
  // server decides what each list holds (R1, R19), never the browser.
  const invalidateLists = (cache: Cache) => {
    for (const field of cache.inspectFields("Query")) {
      if (["approvalRequests", "applications", "images"].includes(field.fieldName)) {
        cache.invalidate("Query", field.fieldName, field.arguments ?? undefined);
      }
    }
  };

  const cache = cacheExchange({
    keys: Object.fromEntries(embedded.map((name) => [name, () => null])),
    updates: {
      Subscription: {
        approvalRequestEvents: (result, _args, cache) => {
          invalidateLists(cache);
          const request = result.approvalRequestEvents as { pipeline?: { id: string } } | undefined;
          if (request?.pipeline?.id) cache.invalidate({ __typename: "Pipeline", id: request.pipeline.id });
        },
        deploymentStatus: (result, _args, cache) => {
          const deployment = result.deploymentStatus as { pipeline?: { id: string } } | undefined;
          if (deployment?.pipeline?.id) {
            cache.invalidate({ __typename: "Pipeline", id: deployment.pipeline.id }, "activeImage");
            cache.invalidate({ __typename: "Pipeline", id: deployment.pipeline.id }, "deployableImages");
            cache.invalidate({ __typename: "Pipeline", id: deployment.pipeline.id }, "deployments");
          }
        },
      },
      Mutation: Object.fromEntries(
        [
          "requestApproval",
          "approveRequest",
          "rejectRequest",
          "cancelApprovalRequest",
          "expireApproval",
          "deployImage",
          "registerImage",
          "createApplication",
          "createEnvironment",
          "createPipeline",
          "updateApprovalPolicy",
          "createDeployFreeze",
          "deleteDeployFreeze",
          "grantRole",
          "revokeRole",
          "createUser",
          "issueApiToken",
          "revokeApiToken",
          "createGroup",
          "addGroupMember",
          "removeGroupMember",
          "grantGroupRole",
          "revokeGroupRole",
          "deactivateUser",
          "reactivateUser",
        ].map((name) => [
          name,
          (_result: unknown, _args: unknown, cache: Cache) => {
            // A mutation may change what any screen shows: read the root lists and the
            // pipelines again (entities are refreshed by id from the mutation's answer).
            for (const field of cache.inspectFields("Query")) {
              cache.invalidate("Query", field.fieldName, field.arguments ?? undefined);
            }
          },
        ]),
      ),
    },
  });

  // After a change (a mutation's answer, a subscription's event) every query on screen is
  // read again from the server. Invalidating the cache is not enough: a read already in
  // flight when the change committed would still be written into the cache afterwards, and
  // stay the screen's answer without the change. So each query sent carries the number of
  // changes seen when it left, and an answer that left before the latest change is read
  // once more (its data may predate the change, even when it arrives after the reread).
  const onScreen = new Map<number, Operation>();
  let changes = 0;
  const sentAfter = (operation: Operation) => (operation.context as { sentAfterChanges?: number }).sentAfterChanges ?? -1;
  const reread = (operation: Operation) =>
    client.reexecuteOperation(
      makeOperation(operation.kind, operation, { ...operation.context, requestPolicy: "network-only" }),
    );
  const rereadAfterChanges = mapExchange({
    onOperation(operation) {
      if (operation.kind === "teardown") onScreen.delete(operation.key);
      if (operation.kind !== "query") return operation;
      const tagged = makeOperation(operation.kind, operation, { ...operation.context, sentAfterChanges: changes });
      onScreen.set(operation.key, tagged);
      return tagged;
    },
    onResult(result) {
      const { operation } = result;
      if (operation.kind === "query") {
        if (sentAfter(operation) < changes && onScreen.has(operation.key)) reread(operation);
        return;
      }
      if ((operation.kind !== "mutation" && operation.kind !== "subscription") || result.error) return;
      changes += 1;
      for (const onScreenOperation of onScreen.values()) reread(onScreenOperation);
    },
  });

  const client = new Client({
    url: "/graphql",
    exchanges: [
      rereadAfterChanges,
      cache,
      fetchExchange,
      subscriptionExchange({
        forwardSubscription(request) {
          const input = { ...request, query: request.query || "" };
          return {
            subscribe(sink) {
              const unsubscribe = ws.subscribe(input, sink as never);
              return { unsubscribe };
            },
          };
        },
      }),
    ],
    fetchOptions: () => ({ headers: { Authorization: authorization } }),
    requestPolicy: "cache-and-network",
  });
  return { client, close: () => void ws.dispose() };
}

const KEY = "greenlight.token";

// Kept for this tab only; signing out forgets it.
export const tokenStore = {
  get: (): string | null => sessionStorage.getItem(KEY),
  set: (token: string) => sessionStorage.setItem(KEY, token),
  clear: () => sessionStorage.removeItem(KEY),
};
