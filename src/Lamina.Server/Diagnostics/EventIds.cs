namespace Lamina.Server.Diagnostics;

/// <summary>Every log event id, one range per area, never reused.</summary>
internal static class EventIds
{
    // 1xxx hosting
    public const int Listening = 1000;
    public const int UnhandledRequestError = 1001;
    public const int DatabaseUnavailable = 1002;

    // 2xxx control plane
    public const int FunctionCreated = 2000;
    public const int FunctionUpdated = 2001;
    public const int FunctionDeleted = 2002;
    public const int FunctionsLoaded = 2003;
    public const int InterruptedUploadsRemoved = 2004;
    public const int FunctionCodeMissing = 2005;
    public const int PackageRefused = 2006;
    public const int FunctionLayersMissing = 2007;
    public const int VersionPublished = 2008;
    public const int VersionDeleted = 2009;
    public const int AliasChanged = 2010;
    public const int LayerVersionPublished = 2011;
    public const int LayerVersionDeleted = 2012;
    public const int ReservedConcurrencyChanged = 2013;
    public const int ProvisionedConcurrencyChanged = 2014;
    public const int EventInvokeConfigChanged = 2015;
    public const int PolicyChanged = 2016;
    public const int FunctionUrlChanged = 2017;
    public const int UnusedCodeDeleted = 2018;
    public const int UnusedCodeCollectionFailed = 2019;

    // 3xxx invoke and environments
    public const int SandboxUnavailable = 3000;
    public const int FunctionOutput = 3001;
    public const int SandboxStartFailed = 3002;
    public const int ColdStart = 3003;
    public const int EnvironmentEvicted = 3005;
    public const int EnvironmentReaped = 3006;
    public const int ProvisionedInitFailed = 3007;
    public const int HeartbeatFailed = 3008;
    public const int RuntimeApiConnectionFailed = 3009;

    // 4xxx asynchronous invocation
    public const int AsyncStoreWriteFailed = 4000;
    public const int AsyncRedelivering = 4001;
    public const int AsyncFunctionGone = 4002;
    public const int AsyncSystemError = 4003;
    public const int AsyncEventFailed = 4004;
    public const int AsyncDeadLetterUnavailable = 4005;
    public const int AsyncDestinationUnsupported = 4006;
    public const int AsyncLoopFailed = 4007;
    public const int AsyncSettleFailed = 4008;
    public const int AsyncRequeued = 4009;

    // 5xxx logs and metrics
    public const int LogStoreWriteFailed = 5000;
    public const int LogSubscriptionFailed = 5001;
    public const int LogSubscriptionTargetMissing = 5002;
    public const int LogSubscriptionNotPermitted = 5003;
    public const int LogSubscriptionLoop = 5004;
    public const int LogSubscriptionDropped = 5005;
    public const int LogStoreWriteDeferred = 5006;
    public const int LogStoreWriteResumed = 5007;

    // 6xxx security
    public const int AccessKeysReloadFailed = 6000;

    // 7xxx triggers (event rules and schedules)
    public const int EventDelivered = 7000;
    public const int EventTargetMissing = 7001;
    public const int EventTargetNotPermitted = 7002;
    public const int ScheduleFailed = 7003;
    public const int EventSourcePollerFailed = 7004;
    public const int TopicEndpointMissing = 7005;
    public const int TopicNotPermitted = 7006;
    public const int EventSourceReceiveFailed = 7007;

    // 8xxx S3-compatible object storage
    public const int S3NotificationFailed = 8000;
    public const int S3NotificationTargetMissing = 8001;
    public const int S3NotificationNotPermitted = 8002;
    public const int S3RequestFailed = 8003;
    public const int S3OrphansRemoved = 8004;
    public const int S3DeleteFailed = 8005;

    // 10xxx API Gateway
    public const int ApiGatewayLoaded = 10000;
    public const int ApiGatewayApiDeleted = 10001;
    public const int ApiGatewaySnapshotUnreadable = 10002;
    public const int ApiGatewayApiChanged = 10003;
    public const int ApiGatewayIntegrationFailed = 10004;
    public const int ApiGatewayAuthorizerFailed = 10005;
    public const int ApiGatewayJwksFailed = 10006;
    public const int ApiGatewayRereadFailed = 10007;
    // 9xxx DynamoDB-compatible tables and streams
    public const int DynamoCommitFailed = 9000;
    public const int DynamoWriteFailed = 9001;
    public const int DynamoSweepFailed = 9002;
    public const int DynamoTtlDeleted = 9003;
    public const int DynamoRequestFailed = 9004;
    public const int StreamPollerFailed = 9005;
    public const int StreamBatchDiscarded = 9006;
    public const int StreamDestinationFailed = 9007;

    // 11xxx CloudFormation-compatible stacks
    public const int StackOperationFailed = 11000;
    public const int StackRecovering = 11001;
    public const int StackResourceFailed = 11002;
    public const int StackCompleted = 11003;
    public const int StackLeaseLost = 11004;

    // 12xxx web console and its metrics history
    public const int MetricsHistoryFull = 12000;

    // 13xxx durable functions
    public const int DurableExecutionsLoaded = 13000;
    public const int DurableExecutionStarted = 13001;
    public const int DurableExecutionFinished = 13002;
    public const int DurableSweepFailed = 13003;
    public const int DurableChainedInvokeFailed = 13004;
    public const int DurableLeaseLost = 13005;

    // 14xxx cluster: PostgreSQL store, notifications, node heartbeats, leases (issue #25)
    public const int ClusterConnected = 14000;
    public const int ClusterListenFailed = 14001;
    public const int ClusterHeartbeatFailed = 14002;
    public const int ClusterFunctionReloadFailed = 14003;
    public const int ClusterEventsReclaimed = 14004;
    public const int ClusterLeaseAcquired = 14005;
    public const int ClusterLeaseLost = 14006;
}
