"""Type tokens of the resources the program registers, in one place.

pulumi-proxmoxve 8 names every upstream resource with a ``Legacy`` suffix; a token
changing (a provider upgrade) is then one edit, here, for the program's readers: the
policy checks, the firewall reader, the preview's renderers and the diagram.
"""

STACK = "pulumi:pulumi:Stack"
STACK_REFERENCE = "pulumi:pulumi:StackReference"
PROXMOX_PROVIDER = "pulumi:providers:proxmoxve"

CONTAINER = "proxmoxve:index/containerLegacy:ContainerLegacy"
VM = "proxmoxve:index/vmLegacy:VmLegacy"
#: The framework VM classes: the program does not use them, but a guest made with one
#: must not slip past the checks.
VM_FRAMEWORK = "proxmoxve:index/vm:Vm"
VM2 = "proxmoxve:index/vm2Legacy:Vm2Legacy"
#: The provider's VMs cloned from a template (its ``cloned`` module), likewise unused.
CLONED_VM = "proxmoxve:cloned/vm:Vm"
CLONED_VM_LEGACY = "proxmoxve:cloned/vmLegacy:VmLegacy"

FIREWALL_OPTIONS = "proxmoxve:firewall/optionsLegacy:OptionsLegacy"
FIREWALL_RULES = "proxmoxve:firewall/rulesLegacy:RulesLegacy"
FIREWALL_ALIAS = "proxmoxve:firewall/aliasLegacy:AliasLegacy"
FIREWALL_IPSET = "proxmoxve:firewall/ipsetLegacy:IpsetLegacy"
DATACENTER_FIREWALL = "proxmoxve:cluster/firewallLegacy:FirewallLegacy"
NODE_FIREWALL = "proxmoxve:node/firewallLegacy:FirewallLegacy"
SECURITY_GROUP = "proxmoxve:cluster/firewall/security/groupLegacy:GroupLegacy"

BACKUP_JOB = "proxmoxve:backup/job:Job"
PBS_STORAGE = "proxmoxve:storage/pbs:Pbs"
DOWNLOAD_FILE = "proxmoxve:download/file:File"
POOL = "proxmoxve:index/poolLegacy:PoolLegacy"

RANDOM_PASSWORD = "random:index/randomPassword:RandomPassword"
RANDOM_STRING = "random:index/randomString:RandomString"
