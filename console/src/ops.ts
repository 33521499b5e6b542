// Every operation the console sends: the public API, nothing private.
import { graphql } from "./graphql";

export const MeQuery = graphql(`
  query Me {
    me { id email name isSuperAdmin }
    notificationsEnabled
  }
`);

export const DeploymentFields = graphql(`
  fragment DeploymentFields on Deployment {
    id
    status
    strategy
    startedAt
    finishedAt
    message
    steps { name status }
    image { id tag digest }
    triggeredBy { id name }
    pipeline { id }
  }
`);

export const PipelineCardFields = graphql(
  `
  fragment PipelineCardFields on Pipeline {
    id
    strategy
    triggerType
    frozenUntil
    environment { id name }
    application { id name }
    approvalPolicy { requiredApprovals ttlHours approversCanDeploy kind }
    activeImage { id tag digest repository }
    activeDeployment { ...DeploymentFields }
  }
`,
  [DeploymentFields],
);

export const ApplicationsQuery = graphql(
  `
  query Applications {
    applications {
      id
      name
      pipelines { ...PipelineCardFields }
    }
  }
`,
  [PipelineCardFields],
);

export const RequestFields = graphql(`
  fragment RequestFields on ApprovalRequest {
    id
    state
    comment
    requestedAt
    expiresAt
    requiredApprovals
    progress
    stale
    viewerCanApprove
    viewerCan {
      approve { allowed code reason }
      reject { allowed code reason }
      cancel { allowed code reason }
      expire { allowed code reason }
    }
    policyKind
    requestedBy { id name email }
    image { id tag digest repository builtBy { id name } createdAt }
    pipeline { id environment { id name } application { id name } }
    approvals { decidedAt comment user { id name } }
    rejection { decidedAt comment user { id name } }
    notifiedApprovers { id name }
    requirements { description required approved met }
  }
`);

export const SelectImageQuery = graphql(
  `
  query SelectImage($pipelineId: ID!) {
    pipeline(id: $pipelineId) {
      ...PipelineCardFields
      deployableImages {
        id
        tag
        digest
        repository
        createdAt
        builtBy { id name }
      }
    }
    approvalRequests(filter: { pipelineId: $pipelineId, states: [APPROVED] }, first: 100) {
      edges { node { ...RequestFields } }
    }
  }
`,
  [PipelineCardFields, RequestFields],
);

export const ApprovalForDeploymentQuery = graphql(
  `
  query ApprovalForDeployment($pipelineId: ID!, $applicationId: ID!) {
    pipeline(id: $pipelineId) { ...PipelineCardFields }
    images(applicationId: $applicationId, first: 50) {
      edges {
        node {
          id
          tag
          digest
          repository
          createdAt
          builtBy { id name }
          activeOn { id name }
          approvalState(pipelineId: $pipelineId)
        }
      }
    }
  }
`,
  [PipelineCardFields],
);

export const EligibleApproversQuery = graphql(`
  query EligibleApprovers($pipelineId: ID!, $imageId: ID!) {
    eligibleApprovers(pipelineId: $pipelineId, imageId: $imageId) { id name email }
  }
`);

export const PendingQuery = graphql(
  `
  query Pending {
    awaiting: approvalRequests(filter: { awaitingMyApproval: true }, first: 50) {
      edges { node { ...RequestFields } }
    }
    open: approvalRequests(filter: { states: [PENDING, APPROVED] }, first: 50) {
      edges { node { ...RequestFields } }
    }
    closed: approvalRequests(filter: { states: [REJECTED, CANCELLED, EXPIRED, CONSUMED] }, first: 20) {
      edges { node { ...RequestFields } }
    }
  }
`,
  [RequestFields],
);

export const AppDetailsQuery = graphql(
  `
  query AppDetails($pipelineId: ID!) {
    pipeline(id: $pipelineId) {
      ...PipelineCardFields
      deployments(first: 20) { edges { node { ...DeploymentFields } } }
    }
  }
`,
  [PipelineCardFields, DeploymentFields],
);

export const DeploymentQuery = graphql(
  `
  query Deployment($id: ID!) {
    deployment(id: $id) { ...DeploymentFields }
  }
`,
  [DeploymentFields],
);

export const DeploymentStatusSubscription = graphql(
  `
  subscription DeploymentStatus($id: ID!) {
    deploymentStatus(deploymentId: $id) { ...DeploymentFields }
  }
`,
  [DeploymentFields],
);

export const RequestEventsSubscription = graphql(
  `
  subscription RequestEvents {
    approvalRequestEvents { ...RequestFields }
  }
`,
  [RequestFields],
);

export const RequestApprovalMutation = graphql(
  `
  mutation RequestApproval($input: RequestApprovalInput!) {
    requestApproval(input: $input) { ...RequestFields }
  }
`,
  [RequestFields],
);

export const ApproveMutation = graphql(
  `
  mutation Approve($id: ID!, $comment: String, $acknowledgeStale: Boolean) {
    approveRequest(id: $id, comment: $comment, acknowledgeStale: $acknowledgeStale) { ...RequestFields }
  }
`,
  [RequestFields],
);

export const RejectMutation = graphql(
  `
  mutation Reject($id: ID!, $reason: String!) {
    rejectRequest(id: $id, reason: $reason) { ...RequestFields }
  }
`,
  [RequestFields],
);

export const CancelMutation = graphql(
  `
  mutation Cancel($id: ID!) {
    cancelApprovalRequest(id: $id) { ...RequestFields }
  }
`,
  [RequestFields],
);

export const ExpireMutation = graphql(
  `
  mutation Expire($id: ID!) {
    expireApproval(id: $id) { ...RequestFields }
  }
`,
  [RequestFields],
);

export const DeployMutation = graphql(
  `
  mutation Deploy($input: DeployImageInput!) {
    deployImage(input: $input) { ...DeploymentFields }
  }
`,
  [DeploymentFields],
);

export const CanIQuery = graphql(`
  query CanI($action: Action!, $application: String!, $environment: String!) {
    canI(action: $action, application: $application, environment: $environment) { allowed reason }
  }
`);

export const PipelineForQuery = graphql(`
  query PipelineFor($application: String!, $environment: String!) {
    pipelineFor(application: $application, environment: $environment) {
      id
      application { id name }
      environment { id name }
    }
  }
`);

export const CanDeployQuery = graphql(`
  query CanDeploy($pipelineId: ID!, $imageId: ID!) {
    pipeline(id: $pipelineId) {
      id
      viewerCanDeploy(imageId: $imageId) { allowed code reason }
    }
  }
`);

export const CanRequestApprovalQuery = graphql(`
  query CanRequestApproval($pipelineId: ID!, $imageId: ID!) {
    pipeline(id: $pipelineId) {
      id
      viewerCanRequestApproval(imageId: $imageId) { allowed code reason }
    }
  }
`);

export const AdminUsersQuery = graphql(`
  query AdminUsers {
    users { id email name isActive isSuperAdmin roleBindings { id role application environment } }
    applications { id name }
    environments { id name }
  }
`);

export const GrantRoleMutation = graphql(`
  mutation GrantRole($input: RoleBindingInput!) {
    grantRole(input: $input) { id role application environment user { id roleBindings { id role application environment } } }
  }
`);

export const RevokeRoleMutation = graphql(`
  mutation RevokeRole($id: ID!) {
    revokeRole(id: $id) { id user { id roleBindings { id role application environment } } }
  }
`);

export const CreateUserMutation = graphql(`
  mutation CreateUser($input: CreateUserInput!) {
    createUser(input: $input) { id email name isActive isSuperAdmin roleBindings { id role application environment } }
  }
`);

export const IssueTokenMutation = graphql(`
  mutation IssueToken($input: IssueApiTokenInput!) {
    issueApiToken(input: $input) { token apiToken { id name createdAt expiresAt user { id name } } }
  }
`);

export const TokensQuery = graphql(`
  query Tokens {
    apiTokens(first: 100) { edges { node { id name createdAt expiresAt revokedAt lastUsedAt user { id name } } } }
  }
`);

export const RevokeTokenMutation = graphql(`
  mutation RevokeToken($id: ID!) {
    revokeApiToken(id: $id) { id revokedAt }
  }
`);

export const AuditQuery = graphql(`
  query Audit($filter: AuditEventFilter) {
    auditEvents(filter: $filter, first: 50) {
      edges { node { id at action objectId application environment actor { id name } before after } }
    }
    users { id name email }
  }
`);

export const CreateApplicationMutation = graphql(`
  mutation CreateApplication($name: String!) { createApplication(name: $name) { id name } }
`);

export const CreateEnvironmentMutation = graphql(`
  mutation CreateEnvironment($name: String!) { createEnvironment(name: $name) { id name } }
`);

export const CreatePipelineMutation = graphql(`
  mutation CreatePipeline($input: CreatePipelineInput!) {
    createPipeline(input: $input) { id environment { id name } application { id name } }
  }
`);

export const PolicyFields = graphql(`
  fragment PolicyFields on ApprovalPolicy {
    id
    requiredApprovals
    ttlHours
    approversCanDeploy
    kind
    approvers { id name }
    groupQuorums { minApprovals group { id name } }
    countOncePerPerson
    exceptionUsers { id name }
    exceptionGroups { id name }
    cancelStaleRequests
  }
`);

export const PoliciesQuery = graphql(
  `
  query Policies {
    applications {
      id
      name
      pipelines { id environment { id name } approvalPolicy { ...PolicyFields } }
    }
    users { id name email }
    groups(first: 100) { edges { node { id name } } }
  }
`,
  [PolicyFields],
);

export const UpdatePolicyMutation = graphql(
  `
  mutation UpdatePolicy($pipelineId: ID!, $input: ApprovalPolicyInput!) {
    updateApprovalPolicy(pipelineId: $pipelineId, input: $input) {
      id
      approvalPolicy { ...PolicyFields }
    }
  }
`,
  [PolicyFields],
);

export const GroupsQuery = graphql(`
  query Groups {
    groups(first: 100) {
      edges {
        node {
          id
          name
          members(first: 100) { edges { node { id name email } } }
          roleBindings { id role application environment }
        }
      }
    }
    users { id name email }
    applications { id name }
    environments { id name }
  }
`);

export const CreateGroupMutation = graphql(`
  mutation CreateGroup($name: String!) { createGroup(name: $name) { id name } }
`);

export const AddMemberMutation = graphql(`
  mutation AddMember($groupId: ID!, $userId: ID!) {
    addGroupMember(groupId: $groupId, userId: $userId) { id members(first: 100) { edges { node { id name email } } } }
  }
`);

export const RemoveMemberMutation = graphql(`
  mutation RemoveMember($groupId: ID!, $userId: ID!) {
    removeGroupMember(groupId: $groupId, userId: $userId) { id members(first: 100) { edges { node { id name email } } } }
  }
`);

export const GrantGroupRoleMutation = graphql(`
  mutation GrantGroupRole($input: GroupRoleBindingInput!) {
    grantGroupRole(input: $input) { id role application environment group { id roleBindings { id role application environment } } }
  }
`);

export const RevokeGroupRoleMutation = graphql(`
  mutation RevokeGroupRole($id: ID!) {
    revokeGroupRole(id: $id) { id group { id roleBindings { id role application environment } } }
  }
`);

export const FreezesQuery = graphql(`
  query Freezes {
    deployFreezes {
      id
      name
      startsAt
      endsAt
      environment { id name }
      pipeline { id application { name } environment { name } }
      weekly { timeZone startDay startTime endDay endTime }
      createdBy { id name }
    }
    environments { id name }
  }
`);

export const CreateFreezeMutation = graphql(`
  mutation CreateFreeze($input: DeployFreezeInput!) { createDeployFreeze(input: $input) { id name } }
`);

export const DeleteFreezeMutation = graphql(`
  mutation DeleteFreeze($id: ID!) { deleteDeployFreeze(id: $id) { id } }
`);

export const RegisterImageMutation = graphql(`
  mutation RegisterImage($input: RegisterImageInput!) {
    registerImage(input: $input) { id tag digest repository createdAt builtBy { id name } }
  }
`);
