// Administration, for super-admins (R2): users and their role bindings, applications,
// environments, pipelines and approval policies, API tokens, the audit log. The API refuses
// everyone else; the console only hides the menu.
import { useMutation, useQuery, type CombinedError } from "@urql/preact";
import { useState } from "preact/hooks";
import { readFragment } from "./graphql";
import {
  AddMemberMutation,
  AdminUsersQuery,
  CreateFreezeMutation,
  CreateGroupMutation,
  DeleteFreezeMutation,
  FreezesQuery,
  GrantGroupRoleMutation,
  GroupsQuery,
  RemoveMemberMutation,
  RevokeGroupRoleMutation,
  ApplicationsQuery,
  AuditQuery,
  CreateApplicationMutation,
  CreateEnvironmentMutation,
  CreatePipelineMutation,
  CreateUserMutation,
  GrantRoleMutation,
  IssueTokenMutation,
  PipelineCardFields,
  RevokeRoleMutation,
  RevokeTokenMutation,
  TokensQuery,
  UpdatePolicyMutation,
} from "./ops";
import { ErrorNote, When } from "./ui";

const SECTIONS: [string, string][] = [
  ["users", "Users and roles"],
  ["pipelines", "Applications, environments and pipelines"],
  ["groups", "Groups"],
  ["freezes", "Freezes"],
  ["tokens", "API tokens"],
  ["audit", "Audit log"],
];
const ROLES = ["SUPER_ADMIN", "BUILD_AND_DEPLOY", "IMAGE_APPROVER", "VIEWER", "DEPLOY_AGENT"] as const;
type Role = (typeof ROLES)[number];

const value = (e: Event) => (e.target as HTMLInputElement).value;

export function Admin({ section }: { section?: string }) {
  const current = SECTIONS.find(([key]) => key === section)?.[0] ?? "users";
  return (
    <>
      <h1>Administration</h1>
      <nav aria-label="Administration" class="tabs">
        {SECTIONS.map(([key, title]) => (
          <a key={key} href={`#/admin/${key}`} aria-current={key === current ? "page" : undefined}>
            {title}
          </a>
        ))}
      </nav>
      {current === "users" && <Users />}
      {current === "pipelines" && <Pipelines />}
      {current === "groups" && <Groups />}
      {current === "freezes" && <Freezes />}
      {current === "tokens" && <Tokens />}
      {current === "audit" && <Audit />}
    </>
  );
}

function useAction() {
  const [error, setError] = useState<CombinedError | undefined>();
  const [done, setDone] = useState<string | null>(null);
  const run = async (what: string, action: () => Promise<{ error?: CombinedError }>) => {
    const result = await action();
    setError(result.error);
    setDone(result.error ? null : what);
    return !result.error;
  };
  const note = (
    <>
      <ErrorNote error={error} />
      {done && <p role="status">{done}</p>}
    </>
  );
  return { run, note };
}

function Users() {
  const [{ data, error }] = useQuery({ query: AdminUsersQuery });
  const [, grant] = useMutation(GrantRoleMutation);
  const [, revoke] = useMutation(RevokeRoleMutation);
  const [, create] = useMutation(CreateUserMutation);
  const [form, setForm] = useState({ userId: "", role: "IMAGE_APPROVER" as Role, application: "*", environment: "*" });
  const [user, setUser] = useState({ email: "", name: "" });
  const { run, note } = useAction();
  return (
    <section>
      <ErrorNote error={error} />
      <h2>Grant a role</h2>
      <form
        class="panel inline"
        onSubmit={(e) => {
          e.preventDefault();
          run("Role granted.", () => grant({ input: form }));
        }}
      >
        <label>
          User
          <select required value={form.userId} onChange={(e) => setForm({ ...form, userId: value(e) })}>
            <option value="">choose…</option>
            {data?.users.map((u) => (
              <option key={u.id} value={u.id}>
                {u.name} ({u.email})
              </option>
            ))}
          </select>
        </label>
        <label>
          Role
          <select value={form.role} onChange={(e) => setForm({ ...form, role: value(e) as Role })}>
            {ROLES.map((r) => (
              <option key={r} value={r}>
                {r.toLowerCase().replace(/_/g, "-")}
              </option>
            ))}
          </select>
        </label>
        <label>
          Application
          <select value={form.application} onChange={(e) => setForm({ ...form, application: value(e) })}>
            <option value="*">every application (*)</option>
            {data?.applications.map((a) => (
              <option key={a.id} value={a.name}>
                {a.name}
              </option>
            ))}
          </select>
        </label>
        <label>
          Environment
          <select value={form.environment} onChange={(e) => setForm({ ...form, environment: value(e) })}>
            <option value="*">every environment (*)</option>
            {data?.environments.map((env) => (
              <option key={env.id} value={env.name}>
                {env.name}
              </option>
            ))}
          </select>
        </label>
        <button type="submit" class="primary">
          Grant role
        </button>
      </form>
      {note}
      <h2>Users</h2>
      <table>
        <caption>Users and their role bindings</caption>
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">Email</th>
            <th scope="col">Roles</th>
          </tr>
        </thead>
        <tbody>
          {data?.users.map((u) => (
            <tr key={u.id}>
              <td>
                {u.name}
                {!u.isActive && <span class="muted"> (deactivated)</span>}
              </td>
              <td>{u.email}</td>
              <td>
                {u.roleBindings.map((b) => (
                  <div key={b.id}>
                    {b.role.toLowerCase().replace(/_/g, "-")} on {b.application}/{b.environment}{" "}
                    <button
                      type="button"
                      aria-label={`Revoke ${b.role} on ${b.application}/${b.environment} from ${u.name}`}
                      onClick={() => run("Role revoked.", () => revoke({ id: b.id }))}
                    >
                      Revoke
                    </button>
                  </div>
                ))}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <h2>New user</h2>
      <form
        class="panel inline"
        onSubmit={(e) => {
          e.preventDefault();
          run("User created.", () => create({ input: user }));
        }}
      >
        <label>
          Email <input type="email" required value={user.email} onInput={(e) => setUser({ ...user, email: value(e) })} />
        </label>
        <label>
          Name <input required value={user.name} onInput={(e) => setUser({ ...user, name: value(e) })} />
        </label>
        <button type="submit">Create user</button>
      </form>
    </section>
  );
}

function Pipelines() {
  const [{ data, error }] = useQuery({ query: ApplicationsQuery });
  const [{ data: lists }] = useQuery({ query: AdminUsersQuery });
  const [, createApp] = useMutation(CreateApplicationMutation);
  const [, createEnv] = useMutation(CreateEnvironmentMutation);
  const [, createPipeline] = useMutation(CreatePipelineMutation);
  const [, updatePolicy] = useMutation(UpdatePolicyMutation);
  const [names, setNames] = useState({ app: "", env: "" });
  const [pipe, setPipe] = useState({ applicationId: "", environmentId: "", requiredApprovals: "1" });
  const { run, note } = useAction();
  return (
    <section>
      <ErrorNote error={error} />
      <form
        class="panel inline"
        onSubmit={(e) => {
          e.preventDefault();
          run("Application created.", () => createApp({ name: names.app }));
        }}
      >
        <label>
          Application name <input required value={names.app} onInput={(e) => setNames({ ...names, app: value(e) })} />
        </label>
        <button type="submit">Create application</button>
      </form>
      <form
        class="panel inline"
        onSubmit={(e) => {
          e.preventDefault();
          run("Environment created.", () => createEnv({ name: names.env }));
        }}
      >
        <label>
          Environment name <input required value={names.env} onInput={(e) => setNames({ ...names, env: value(e) })} />
        </label>
        <button type="submit">Create environment</button>
      </form>
      <form
        class="panel inline"
        onSubmit={(e) => {
          e.preventDefault();
          run("Pipeline created.", () =>
            createPipeline({
              input: {
                applicationId: pipe.applicationId,
                environmentId: pipe.environmentId,
                requiredApprovals: Number(pipe.requiredApprovals),
              },
            }),
          );
        }}
      >
        <label>
          Application
          <select required value={pipe.applicationId} onChange={(e) => setPipe({ ...pipe, applicationId: value(e) })}>
            <option value="">choose…</option>
            {lists?.applications.map((a) => (
              <option key={a.id} value={a.id}>
                {a.name}
              </option>
            ))}
          </select>
        </label>
        <label>
          Environment
          <select required value={pipe.environmentId} onChange={(e) => setPipe({ ...pipe, environmentId: value(e) })}>
            <option value="">choose…</option>
            {lists?.environments.map((env) => (
              <option key={env.id} value={env.id}>
                {env.name}
              </option>
            ))}
          </select>
        </label>
        <label>
          Required approvals{" "}
          <input type="number" min={0} max={6} value={pipe.requiredApprovals} onInput={(e) => setPipe({ ...pipe, requiredApprovals: value(e) })} />
        </label>
        <button type="submit">Create pipeline</button>
      </form>
      {note}
      <table>
        <caption>Pipelines and their approval policies</caption>
        <thead>
          <tr>
            <th scope="col">Pipeline</th>
            <th scope="col">Policy</th>
            <th scope="col">Required approvals</th>
          </tr>
        </thead>
        <tbody>
          {data?.applications.flatMap((app) =>
            app.pipelines.map((raw) => {
              const p = readFragment(PipelineCardFields, raw);
              return (
                <tr key={p.id}>
                  <td>
                    {app.name} / {p.environment.name}
                  </td>
                  <td>
                    {p.approvalPolicy.kind.toLowerCase().replace(/_/g, " ")}
                    {p.approvalPolicy.ttlHours ? `, approvals last ${p.approvalPolicy.ttlHours} h` : ""}
                    {p.approvalPolicy.approversCanDeploy ? ", approvers may deploy" : ""}
                  </td>
                  <td>
                    <select
                      aria-label={`Required approvals for ${app.name} on ${p.environment.name}`}
                      value={String(p.approvalPolicy.requiredApprovals)}
                      onChange={(e) =>
                        run("Policy updated.", () =>
                          updatePolicy({ pipelineId: p.id, input: { requiredApprovals: Number(value(e)) } }),
                        )
                      }
                    >
                      {[0, 1, 2, 3, 4, 5, 6].map((n) => (
                        <option key={n} value={String(n)}>
                          {n}
                        </option>
                      ))}
                    </select>
                  </td>
                </tr>
              );
            }),
          )}
        </tbody>
      </table>
    </section>
  );
}

function Tokens() {
  const [{ data, error }] = useQuery({ query: TokensQuery });
  const [{ data: users }] = useQuery({ query: AdminUsersQuery });
  const [, issue] = useMutation(IssueTokenMutation);
  const [, revoke] = useMutation(RevokeTokenMutation);
  const [form, setForm] = useState({ userId: "", name: "" });
  const [secret, setSecret] = useState<string | null>(null);
  const { run, note } = useAction();
  return (
    <section>
      <ErrorNote error={error} />
      <form
        class="panel inline"
        onSubmit={async (e) => {
          e.preventDefault();
          const result = await issue({ input: form });
          await run("Token issued.", async () => result);
          setSecret(result.data?.issueApiToken.token ?? null);
        }}
      >
        <label>
          User
          <select required value={form.userId} onChange={(e) => setForm({ ...form, userId: value(e) })}>
            <option value="">choose…</option>
            {users?.users.map((u) => (
              <option key={u.id} value={u.id}>
                {u.name} ({u.email})
              </option>
            ))}
          </select>
        </label>
        <label>
          Token name <input required value={form.name} onInput={(e) => setForm({ ...form, name: value(e) })} />
        </label>
        <button type="submit">Issue token</button>
      </form>
      {note}
      {secret && (
        <p role="status">
          The token, shown once: <code class="secret">{secret}</code>
        </p>
      )}
      <table>
        <caption>API tokens (never their secrets)</caption>
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">User</th>
            <th scope="col">Created</th>
            <th scope="col">Last used</th>
            <th scope="col">State</th>
          </tr>
        </thead>
        <tbody>
          {data?.apiTokens.edges.map(({ node: t }) => (
            <tr key={t.id}>
              <td>{t.name}</td>
              <td>{t.user.name}</td>
              <td>
                <When at={t.createdAt} />
              </td>
              <td>
                <When at={t.lastUsedAt} />
              </td>
              <td>
                {t.revokedAt ? (
                  <>
                    revoked <When at={t.revokedAt} />
                  </>
                ) : (
                  <button type="button" aria-label={`Revoke token ${t.name}`} onClick={() => run("Token revoked.", () => revoke({ id: t.id }))}>
                    Revoke
                  </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

function Audit() {
  const [filter, setFilter] = useState({ application: "", environment: "", action: "" });
  const [{ data, error }] = useQuery({
    query: AuditQuery,
    variables: {
      filter: {
        application: filter.application || null,
        environment: filter.environment || null,
        action: filter.action || null,
      },
    },
  });
  return (
    <section>
      <form class="panel inline" onSubmit={(e) => e.preventDefault()} aria-label="Audit log filters">
        <label>
          Application <input value={filter.application} onChange={(e) => setFilter({ ...filter, application: value(e) })} />
        </label>
        <label>
          Environment <input value={filter.environment} onChange={(e) => setFilter({ ...filter, environment: value(e) })} />
        </label>
        <label>
          Action <input value={filter.action} onChange={(e) => setFilter({ ...filter, action: value(e) })} />
        </label>
      </form>
      <ErrorNote error={error} />
      <table>
        <caption>Audit log, newest first</caption>
        <thead>
          <tr>
            <th scope="col">When</th>
            <th scope="col">Who</th>
            <th scope="col">Action</th>
            <th scope="col">Where</th>
            <th scope="col">Change</th>
          </tr>
        </thead>
        <tbody>
          {data?.auditEvents.edges.map(({ node: e }) => (
            <tr key={e.id}>
              <td>
                <When at={e.at} />
              </td>
              <td>{e.actor ? e.actor.name : "Greenlight"}</td>
              <td>{e.action}</td>
              <td>
                {e.application ?? ""}
                {e.environment ? ` / ${e.environment}` : ""}
              </td>
              <td>
                <code class="json">{JSON.stringify(e.before ?? null)} → {JSON.stringify(e.after ?? null)}</code>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

function Groups() {
  const [{ data, error }] = useQuery({ query: GroupsQuery });
  const [, createGroup] = useMutation(CreateGroupMutation);
  const [, addMember] = useMutation(AddMemberMutation);
  const [, removeMember] = useMutation(RemoveMemberMutation);
  const [, grant] = useMutation(GrantGroupRoleMutation);
  const [, revoke] = useMutation(RevokeGroupRoleMutation);
  const [name, setName] = useState("");
  const [member, setMember] = useState<Record<string, string>>({});
  const [role, setRole] = useState<Record<string, { role: Role; application: string; environment: string }>>({});
  const { run, note } = useAction();
  return (
    <section>
      <ErrorNote error={error} />
      <form
        class="panel inline"
        onSubmit={(e) => {
          e.preventDefault();
          run("Group created.", () => createGroup({ name }));
        }}
      >
        <label>
          Group name <input required value={name} onInput={(e) => setName(value(e))} />
        </label>
        <button type="submit">Create group</button>
      </form>
      {note}
      {data?.groups.edges.map(({ node: group }) => {
        const grantForm = role[group.id] ?? { role: "IMAGE_APPROVER" as Role, application: "*", environment: "*" };
        return (
          <section key={group.id} class="card" aria-label={`Group ${group.name}`}>
            <h2>{group.name}</h2>
            <h3>Members</h3>
            <ul>
              {group.members.edges.map(({ node: user }) => (
                <li key={user.id}>
                  {user.name} <span class="muted">{user.email}</span>{" "}
                  <button
                    type="button"
                    aria-label={`Remove ${user.name} from ${group.name}`}
                    onClick={() => run("Member removed.", () => removeMember({ groupId: group.id, userId: user.id }))}
                  >
                    Remove
                  </button>
                </li>
              ))}
            </ul>
            <form
              class="inline panel"
              onSubmit={(e) => {
                e.preventDefault();
                run("Member added.", () => addMember({ groupId: group.id, userId: member[group.id] ?? "" }));
              }}
            >
              <label>
                Add member
                <select required value={member[group.id] ?? ""} onChange={(e) => setMember({ ...member, [group.id]: value(e) })}>
                  <option value="">choose…</option>
                  {data.users.map((u) => (
                    <option key={u.id} value={u.id}>
                      {u.name} ({u.email})
                    </option>
                  ))}
                </select>
              </label>
              <button type="submit">Add</button>
            </form>
            <h3>Roles</h3>
            <ul>
              {group.roleBindings.map((b) => (
                <li key={b.id}>
                  {b.role.toLowerCase().replace(/_/g, "-")} on {b.application}/{b.environment}{" "}
                  <button
                    type="button"
                    aria-label={`Revoke ${b.role} on ${b.application}/${b.environment} from ${group.name}`}
                    onClick={() => run("Role revoked.", () => revoke({ id: b.id }))}
                  >
                    Revoke
                  </button>
                </li>
              ))}
            </ul>
            <form
              class="inline panel"
              onSubmit={(e) => {
                e.preventDefault();
                run("Role granted.", () => grant({ input: { groupId: group.id, ...grantForm } }));
              }}
            >
              <label>
                Role
                <select value={grantForm.role} onChange={(e) => setRole({ ...role, [group.id]: { ...grantForm, role: value(e) as Role } })}>
                  {ROLES.map((r) => (
                    <option key={r} value={r}>
                      {r.toLowerCase().replace(/_/g, "-")}
                    </option>
                  ))}
                </select>
              </label>
              <label>
                Application{" "}
                <input value={grantForm.application} onInput={(e) => setRole({ ...role, [group.id]: { ...grantForm, application: value(e) } })} />
              </label>
              <label>
                Environment{" "}
                <input value={grantForm.environment} onInput={(e) => setRole({ ...role, [group.id]: { ...grantForm, environment: value(e) } })} />
              </label>
              <button type="submit">Grant role to group</button>
            </form>
          </section>
        );
      })}
    </section>
  );
}

function Freezes() {
  const [{ data, error }] = useQuery({ query: FreezesQuery });
  const [, create] = useMutation(CreateFreezeMutation);
  const [, remove] = useMutation(DeleteFreezeMutation);
  const [form, setForm] = useState({ name: "", environmentId: "", startsAt: "", endsAt: "" });
  const { run, note } = useAction();
  const iso = (local: string) => (local ? new Date(local).toISOString() : null);
  return (
    <section>
      <ErrorNote error={error} />
      <form
        class="panel inline"
        onSubmit={(e) => {
          e.preventDefault();
          run("Freeze created.", () =>
            create({
              input: { name: form.name, environmentId: form.environmentId, startsAt: iso(form.startsAt), endsAt: iso(form.endsAt) },
            }),
          );
        }}
      >
        <label>
          Name <input required value={form.name} onInput={(e) => setForm({ ...form, name: value(e) })} />
        </label>
        <label>
          Environment
          <select required value={form.environmentId} onChange={(e) => setForm({ ...form, environmentId: value(e) })}>
            <option value="">choose…</option>
            {data?.environments.map((env) => (
              <option key={env.id} value={env.id}>
                {env.name}
              </option>
            ))}
          </select>
        </label>
        <label>
          From <input type="datetime-local" required value={form.startsAt} onInput={(e) => setForm({ ...form, startsAt: value(e) })} />
        </label>
        <label>
          Until <input type="datetime-local" required value={form.endsAt} onInput={(e) => setForm({ ...form, endsAt: value(e) })} />
        </label>
        <button type="submit">Create freeze</button>
      </form>
      {note}
      <table>
        <caption>Deploy freezes</caption>
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">Where</th>
            <th scope="col">When</th>
            <th scope="col">By</th>
            <th scope="col">
              <span class="sr-only">Delete</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {data?.deployFreezes.map((f) => (
            <tr key={f.id}>
              <td data-label="Name">{f.name}</td>
              <td data-label="Where">
                {f.environment ? f.environment.name : f.pipeline ? `${f.pipeline.application.name} / ${f.pipeline.environment.name}` : ""}
              </td>
              <td data-label="When">
                {f.weekly ? (
                  `weekly ${f.weekly.startDay.toLowerCase()} ${f.weekly.startTime} to ${f.weekly.endDay.toLowerCase()} ${f.weekly.endTime} (${f.weekly.timeZone})`
                ) : (
                  <>
                    <When at={f.startsAt} /> to <When at={f.endsAt} />
                  </>
                )}
              </td>
              <td data-label="By">{f.createdBy.name}</td>
              <td>
                <button type="button" aria-label={`Delete freeze ${f.name}`} onClick={() => run("Freeze deleted.", () => remove({ id: f.id }))}>
                  Delete
                </button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
